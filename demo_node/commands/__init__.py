"""The ``demo-node`` subcommands, one module each: its parser beside the code it calls."""
