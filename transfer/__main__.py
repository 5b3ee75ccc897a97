from transfer.cli import main

raise SystemExit(main())
