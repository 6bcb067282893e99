"""Run folders on disk: atomic, verified checkpoints (``checkpoint``) and the folder's records and weights
(``folder``)."""
