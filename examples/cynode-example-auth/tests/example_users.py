"""The test users' passwords, shared by the fixtures and the tests."""

CAROL_PASSWORD = "carol-correct-horse"
DAVE_PASSWORD = "dave-battery-staple"
