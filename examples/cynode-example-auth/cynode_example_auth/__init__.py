"""cynode-example-auth: an authentication plugin for cynode, written as a third party would.

It vouches for users listed with an argon2id hash in a static file
(``CYNODE_EXAMPLE_AUTH_FILE``) or an environment variable
(``CYNODE_EXAMPLE_AUTH_USERS``) and defers every other login to the next
plugin (cynode's local accounts). Importing the package is cheap.
"""

__version__ = "0.1.0"
