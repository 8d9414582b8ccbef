from noisefs.console import main

main()
