"""The nerd server: auth, the batch API and the data plane over one database."""
