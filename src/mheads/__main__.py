from mheads.cli import main

raise SystemExit(main())
