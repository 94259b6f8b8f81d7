"""The local twin, never deployed to the Function App: the development host, the local ML platform and the
`autopilot` command. `shared/` never imports this package."""
