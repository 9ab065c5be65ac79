"""edge-bridge: RFID scans over MQTT turned into live visit events for supervisors."""
