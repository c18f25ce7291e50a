"""Small models trained on cached features; they never load an encoder."""
