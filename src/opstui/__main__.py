from opstui.cli import main

raise SystemExit(main())
