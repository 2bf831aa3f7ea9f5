// Tessera module
