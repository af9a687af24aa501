"""Model definitions tuneforge owns (the text models are transformers' own)."""
