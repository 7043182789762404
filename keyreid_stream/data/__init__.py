"""Sample data: locating, fetching and verifying the demo video the project runs on out of the box."""
