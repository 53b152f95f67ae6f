from mikro.cli import main

main()
