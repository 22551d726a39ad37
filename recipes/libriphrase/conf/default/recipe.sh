# Settings of the default config: the embedded synthetic corpus, sized for a 2-core CPU (~45 min).
synth_hours=1.0
# LibriSpeech subsets, used with --corpus librispeech
librispeech_train="train-clean-100 train-clean-360"
librispeech_dev=dev-clean
librispeech_test=train-other-500
align_max_per=0.5   # skip utterances the CTC model gets badly wrong when building P2V
