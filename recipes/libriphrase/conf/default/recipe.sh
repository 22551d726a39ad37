# Settings of the default config: the embedded synthetic corpus plus the real-speech pack, sized
# for a 2-core CPU.
synth_hours=1.0
# A second corpus of Kokoro neural voices (style-vector mixes); 0 = none. 0.4 h took 37 min to
# synthesise on this machine, more than the whole main job may take, and the real-speech pack now
# brings real voices; set 0.4 to add it back.
kokoro_hours=0
# LibriSpeech subsets, used with --corpus librispeech
librispeech_train="train-clean-100 train-clean-360"
librispeech_dev=dev-clean
librispeech_test=train-other-500
align_max_per=0.5   # skip utterances the CTC model gets badly wrong when building P2V
phrase_pad=0.05        # s of context on each side of a phrase cut with CTC word alignments
synth_cut_phrases=3000 # phrases cut from the synthetic training sentences (more keywords for the heads)
synth_ctc_init=hama   # stage 2 fine-tunes the pretrained real-speech model (conf/ctc_finetune.yaml); scratch: conf/ctc.yaml
