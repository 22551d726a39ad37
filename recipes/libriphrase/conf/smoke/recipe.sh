# Smoke config: every stage, all heads, in a few minutes (CI runs it). Numbers are meaningless.
synth_hours=0.06
data_suffix=_smoke
librispeech_train="train-clean-100"
librispeech_dev=dev-clean
librispeech_test=train-other-500
synth_args="--sentence-fraction 0.3 --min-phoneme-count 0"
align_max_per=100   # the 2-epoch smoke model recognises nothing: align everything anyway
phrase_pad=0.05
synth_cut_phrases=100
default_real_pack=none   # the 5 h pack is not smoke-sized; tests pass a tiny stand-in with --real-pack
realspeech_eval_args="--skip fsdd --no-plots"
synth_heads=ctc,ced,clad   # every head the recipe trains by default somewhere
