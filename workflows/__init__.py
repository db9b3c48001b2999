"""One module per long-lived process (`workflows.registry.WORKFLOWS` lists them). Nothing is
imported here: the workflow sandbox imports this package with every workflow module it runs."""
