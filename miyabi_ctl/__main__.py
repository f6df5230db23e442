from miyabi_ctl.cli.app import main

main()
