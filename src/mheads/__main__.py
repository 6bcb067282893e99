from mheads.cli.commands import main

raise SystemExit(main())
