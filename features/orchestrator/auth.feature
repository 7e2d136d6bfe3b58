Feature: Local user authentication at the User API Gateway
  The gateway logs users in with argon2id passwords, issues access and
  refresh JWTs, rotates refresh tokens (a replayed one revokes its family),
  throttles guessing, and audits every event.

  Background:
    Given the gateway is running against an empty migrated database
    And the seeded user "admin" has the fixture admin password

  @REQ-IDENTY-0103 @REQ-IDENTY-0104 @REQ-IDENTY-0118 @phase1
  Scenario: Login with correct credentials issues an access and a refresh token
    When I log in as "admin" with the admin password
    Then the status is 200
    And the body has a non-empty "access_token" and a non-empty "refresh_token"
    And "token_type" is "Bearer" and "expires_in" is the configured access lifetime
    And the access token expires at most "expires_in" seconds ahead and carries a session id claim
    And an audit row "login_success" with success true exists for "admin"

  @REQ-IDENTY-0103 @REQ-IDENTY-0118 @REQ-STANDS-0110 @phase1
  Scenario Outline: Bad credentials are refused without telling which part was wrong
    When I log in as "<handle>" with password "<password>"
    Then I get a problem response with status 401 and detail "Invalid credentials"
    And the body contains no token field
    And an audit row "login_failure" with success false exists
    Examples:
      | handle | password           |
      | admin  | wrong-pw           |
      | admin  | admin123           |
      | nobody | <admin_password>   |

  @REQ-STANDS-0108 @REQ-STANDS-0130 @phase1
  Scenario Outline: Malformed or incomplete login bodies are rejected with 400
    When I POST the raw body '<body>' to /v1/auth/login
    Then I get a problem response with status 400 and detail "<detail>"
    Examples:
      | body                                | detail                           |
      | {"handle": "admin", "password":     | Invalid request body             |
      | {"handle": "admin"}                 | Handle and password are required |
      | {"password": "x"}                   | Handle and password are required |
      | {"handle": "", "password": ""}      | Handle and password are required |
      | {"handle": 5, "password": []}       | Invalid request body             |
      | ["admin"]                           | Invalid request body             |

  @REQ-STANDS-0108 @beyond_upstream @phase1
  Scenario: A login body that is not JSON is refused with 415
    When I POST a form-encoded login body
    Then I get a problem response with status 415

  @REQ-STANDS-0108 @beyond_upstream @phase1
  Scenario: An oversized login body is refused with 413
    When I POST a login body of 11 MiB
    Then I get a problem response with status 413

  @REQ-IDENTY-0118 @REQ-STANDS-0112 @phase1
  Scenario: Login attempts from one client address are limited to 60 a minute
    When I send 60 login attempts for different handles from address "10.1.1.1"
    Then the next attempt from "10.1.1.1" gets a problem response with status 429 and type "urn:cynodeai:error:rate_limit"
    And the response has a Retry-After header between 1 and 60 seconds
    And a login as "admin" with the admin password from "10.1.1.1" also gets 429
    And a login as "admin" with the admin password from "10.1.1.2" succeeds
    And an audit row "login_failure" with reason "rate limited" exists

  @REQ-IDENTY-0117 @REQ-IDENTY-0118 @phase1
  Scenario: Ten failed logins for one handle slow down the failing addresses, never the right password from another
    Given user "alice" exists with password "alice-pw"
    When I send 10 logins for "alice" with a wrong password from 10 different addresses
    Then a login as "alice" with password "alice-pw" from one of those addresses gets a problem response with status 429
    And the response has a Retry-After header between 1 and 8 seconds
    And a login as "alice" with password "alice-pw" from a fresh address succeeds
    And an audit row "login_failure" with reason "rate limited" and subject "alice" exists
    And once the Retry-After time has passed "alice" can log in with password "alice-pw" from that address

  @REQ-IDENTY-0105 @REQ-IDENTY-0104 @phase1
  Scenario: Refresh rotates the refresh token
    Given I am logged in as "admin"
    When I refresh with my refresh token
    Then the status is 200 with a new access token and a different refresh token
    And the database holds only hashes of both refresh tokens and the first session is inactive

  @REQ-IDENTY-0105 @REQ-IDENTY-0106 @phase1
  Scenario: Replaying a rotated refresh token revokes the whole session chain
    Given I am logged in as "admin"
    And I have refreshed once
    And I hold a second, separate login of "admin"
    When I refresh with the first refresh token again
    Then I get a problem response with status 401 and detail "Invalid refresh token"
    And an audit row "refresh_failure" records the reuse of a rotated token
    And refreshing with the second refresh token of the chain gets 401
    And the access token from the refresh now gets 401 on /v1/users/me
    And every refresh session of that chain is inactive
    And refreshing the separate login still succeeds

  @REQ-IDENTY-0122 @REQ-STANDS-0130 @phase1
  Scenario Outline: The refresh endpoint accepts only a live refresh token
    Given I am logged in as "admin"
    When I send <token> to the refresh endpoint
    Then I get a problem response with status <status>
    Examples:
      | token                       | status |
      | an empty JSON object        | 400    |
      | a body that is not JSON     | 400    |
      | my access token             | 401    |
      | a node JWT                  | 401    |
      | an expired refresh token    | 401    |
      | a refresh token with a bad signature | 401 |

  @REQ-IDENTY-0106 @REQ-IDENTY-0118 @phase1
  Scenario: Logout ends the session so its refresh token no longer works
    Given I am logged in as "admin"
    When I log out with my access token and my refresh token in the body
    Then the status is 204 with an empty body
    And refreshing with my refresh token gets 401
    And an audit row "logout" with success true exists for "admin"

  @REQ-IDENTY-0106 @phase1
  Scenario: Logout with an empty body ends the session of the presented access token
    Given I am logged in as "admin"
    When I log out with my access token and no body
    Then the status is 204 with an empty body
    And refreshing with my refresh token gets 401
    And my access token gets 401 on /v1/users/me

  @REQ-IDENTY-0106 @REQ-IDENTY-0122 @phase1
  Scenario: The access token of a logged-out session is refused at once
    Given I am logged in as "admin"
    And I have logged out
    Then my access token gets 401 on /v1/users/me
    And my access token gets 401 on /v1/tasks

  @REQ-IDENTY-0119 @REQ-IDENTY-0100 @phase1
  Scenario: The current user can read their own record
    Given I am logged in as "admin"
    When I GET /v1/users/me with my access token
    Then the status is 200 and the body has a UUID "id", "handle" "admin" and "is_active" true
    And the body contains no password hash and no token

  @REQ-IDENTY-0122 @REQ-USRGWY-0124 @REQ-USRGWY-0133 @REQ-STANDS-0111 @phase1
  Scenario Outline: Protected user routes refuse anything but a valid user access token
    Given I am logged in as "admin"
    When I GET /v1/users/me with the Authorization header <header>
    Then I get a problem response with status 401
    Examples:
      | header                                   |
      | absent                                   |
      | "Bearer" alone                           |
      | Basic with the admin password            |
      | Bearer and an expired access token       |
      | Bearer and an access token with an edited payload |
      | Bearer and an access token with alg none |
      | Bearer and an access token signed with another secret |
      | Bearer and my refresh token              |
      | Bearer and a node JWT                    |

  @REQ-IDENTY-0101 @REQ-IDENTY-0122 @phase1
  Scenario: A disabled user can neither log in, refresh nor use a live access token
    Given user "alice" exists with password "alice-pw"
    And I am logged in as "alice" with password "alice-pw"
    When an administrator disables "alice"
    Then a login as "alice" with password "alice-pw" gets 401
    And refreshing with my refresh token gets 401
    And my access token gets 401 on /v1/users/me
    And the users row for "alice" still exists

  @REQ-IDENTY-0121 @phase1
  Scenario: The reserved system user exists and cannot log in
    Then a users row with handle "system" exists
    And a login as "system" with password "anything" gets a problem response with status 401 and detail "Invalid credentials"

  @REQ-IDENTY-0109 @REQ-IDENTY-0110 @REQ-IDENTY-0111 @REQ-IDENTY-0112 @REQ-STANDS-0110 @phase1
  Scenario: Passwords and refresh tokens are stored only as hashes and never logged
    Given I am logged in as "admin"
    And I have refreshed once
    Then the password credential row holds an argon2id hash, not the admin password
    And no database column and no log line contains the admin password or any issued token
