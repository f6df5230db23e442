from miyabi_ctl.cli import main

main()
