from exosphere_server.cli import main

main()
