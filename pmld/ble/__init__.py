"""Bluetooth LE: the pmld band's GATT protocol (:mod:`pmld.ble.protocol`).

The recorder, the Polar adapter and the virtual band live here too; the protocol
module imports only NumPy, so the codec can be used without bleak.
"""
