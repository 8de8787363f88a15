"""Cloud sync over MQTT 5: the versioned contract (topics.py, messages.py, docs/contract.md), the gateway's side
(link.py: paho bridged to asyncio; sync.py: the orchestrator; uploader.py: the durable outbox; downlink.py:
snapshots, deltas, commands) and the cloud's side (kit.py), plus what tests and the demo need to run it for
real (broker.py: a local Mosquitto; faults.py: a TCP proxy that stalls or drops; tls.py: a throwaway PKI)."""
