"""dropscore's offline stack (never deployed): Azurite, emulators and the Functions dev host."""
