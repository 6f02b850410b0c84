"""What trains a DiTAR vocoder and does not ship with it: discriminators, GAN and spectral losses, audio segments.

`examples/train_vocoder.py` drives them; the generator itself is `modeling_ditar.vocoder_vocos.VocosVocoder`.
"""
