//! VRRP: pure codec (`packet`) and state machine (`router`), and the I/O driver.
