"""Reader emulator: RFID readers that speak only the MQTT wire contract (CONTRACT §3, §6)."""
