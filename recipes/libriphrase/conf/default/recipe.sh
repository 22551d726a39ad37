# Settings of the default config: the embedded synthetic corpus, sized for a 2-core CPU (~45 min).
synth_hours=1.0
kokoro_hours=0.4     # a second corpus of Kokoro neural voices (style-vector mixes); 0 = none
# LibriSpeech subsets, used with --corpus librispeech
librispeech_train="train-clean-100 train-clean-360"
librispeech_dev=dev-clean
librispeech_test=train-other-500
align_max_per=0.5   # skip utterances the CTC model gets badly wrong when building P2V
phrase_pad=0.05        # s of context on each side of a phrase cut with CTC word alignments
synth_cut_phrases=3000 # phrases cut from the synthetic training sentences (more keywords for the heads)
