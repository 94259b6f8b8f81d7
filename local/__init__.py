"""The local twin, never deployed to the Function App: the development host and the local ML platform. The
`autopilot` command that drives it lives in `autopilot/`. `shared/` never imports this package."""
