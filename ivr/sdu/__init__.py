"""The State Disbursement Unit (SDU) API: its contract, the one client, and the stub server.

- `contract.yaml`: byte-for-byte copy of the binding contract (`shared/sdu-api.yaml`).
- `schema`: JSON Schema validators built from that contract (used by the client and the tests).
- `client`: `SDUClient`, the only code in the app that talks to the SDU.
- `stub`: a Flask app implementing the contract from `fixtures.json`, for development and tests.
"""
