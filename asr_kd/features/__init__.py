"""Log-mel front ends (the seam to torchaudio/librosa), global CMVN and the feature store."""
