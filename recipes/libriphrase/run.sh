#!/usr/bin/env bash
# openkws LibriPhrase recipe: corpus -> CTC acoustic model -> P2V -> pairs -> matcher heads ->
# model file -> AUC/EER on easy/hard.
#
#   bash recipes/libriphrase/run.sh                               # embedded synthetic corpus, offline, CPU
#   bash recipes/libriphrase/run.sh --config smoke                # every stage in a few minutes (CI)
#   bash recipes/libriphrase/run.sh --corpus librispeech --data-root /data/LibriSpeech --ngpu 4
#   bash recipes/libriphrase/run.sh --stage 5 --stop-stage 7      # resume from a stage
#   bash recipes/libriphrase/run.sh --threads 1                   # on a machine shared with other work
#   bash recipes/libriphrase/run.sh --ctc-args "optim.epochs=40" --head-args "optim.epochs=20"   # config overrides
#   bash recipes/libriphrase/run.sh --real-pack none --ctc-init scratch   # synthetic speech only, from scratch
#
# Real speech: when the real-speech pack is there (--real-pack, default ../shared/data/realspeech
# beside the repository), its train split joins the acoustic model's and the heads' training data,
# its dev split selects the acoustic checkpoint (phoneme error rate on real speech), calibrates the
# ctc head and every head's threshold (dev keyword-in-sentence trials), picks the default head,
# and stage 7 reports the real-speech evaluation beside the synthetic one. Without it the recipe
# runs on synthetic speech alone and says so.
#
# Acoustic model: --ctc-init hama (the synthetic default) fine-tunes the pretrained real-speech
# Conformer of the hama wheel; scratch (the LibriSpeech default) trains ours from scratch. hama's
# training data is undisclosed (it may have heard LibriSpeech), so results.json records the
# choice ("acoustic_init") and a LibriPhrase run with it is not comparable with papers.
#
# Heads: ctc (the training-free CTC keyword search over the acoustic model's posteriors) needs no
# stage 5; ced, clad and phonmatch are trained there. Default: ctc,clad on the synthetic corpus
# (CED measured at chance on real sentences), ctc,ced,clad on LibriSpeech.
#
# Stages (DESIGN.md §2): 0 corpus, 1 manifests + checks, 2 CTC training, 3 alignment + P2V,
# 4 LibriPhrase pairs, 5 heads, 6 export, 7 scoring + report. A finished stage leaves
# exp/<tag>/.done/<stage>; a re-run skips it, so a killed run resumes where it stopped (the
# trainers also resume mid-stage from their checkpoints).
#
# --corpus librispeech expects (or downloads into --data-root) LibriSpeech/{train-clean-100,
# train-clean-360,dev-clean,train-other-500}; a pre-downloaded tree can be symlinked there. For the
# official LibriPhrase test, put libriphrase_diffspk_all_{1,2,3,4}word.csv in --libriphrase-csv
# (and the unzipped LibriPhrase_evalset in --libriphrase-audio, or clips are re-cut from
# train-other-500 with our alignments).
set -euo pipefail

# The whole recipe is one function, so bash parses it before running it: editing this file (or a
# git pull) while a run is going cannot change what that run executes.
main() {
command_line="$0 $*"

config=default
corpus=synth
data_root=
libriphrase_csv=
libriphrase_audio=
heads=
ngpu=0
real_pack=
ctc_init=
stage=0
stop_stage=7
tag=
seed=0
threads=
ctc_args=
head_args=
heldout_manifest=

usage() { sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --data-root) data_root=$2; shift 2 ;;
    --libriphrase-csv) libriphrase_csv=$2; shift 2 ;;
    --libriphrase-audio) libriphrase_audio=$2; shift 2 ;;
    --heads) heads=$2; shift 2 ;;
    --ngpu) ngpu=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --ctc-args) ctc_args=$2; shift 2 ;;
    --head-args) head_args=$2; shift 2 ;;
    --real-pack) real_pack=$2; shift 2 ;;
    --ctc-init) ctc_init=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
done

# On a machine shared with other work, one thread per process is much faster than torch's
# default (OpenMP threads wait for each other when a core is taken away): --threads 1.
[ -z "$threads" ] || export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
recipe=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# data_prep/ and evaluation/ are imported from the repository, whatever the working directory.
export PYTHONPATH="$(cd "$recipe/../.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
conf=$recipe/conf/$config
[ -d "$conf" ] || { echo "run.sh: no config '$config' (have: $(ls "$recipe/conf" | tr '\n' ' '))" >&2; exit 2; }
case "$corpus" in synth|librispeech) ;; *) echo "run.sh: --corpus must be synth or librispeech" >&2; exit 2 ;; esac
# shellcheck source=conf/default/recipe.sh
source "$conf/recipe.sh"   # corpus sizes and per-stage settings of this config
kokoro_hours=${kokoro_hours:-0}
# The pretrained acoustic model is the synthetic corpus's default; LibriSpeech stays from scratch.
[ -n "$ctc_init" ] || ctc_init=$([ "$corpus" = synth ] && echo "${synth_ctc_init:-hama}" || echo scratch)
case "$ctc_init" in hama|scratch) ;; *) echo "run.sh: --ctc-init must be hama or scratch" >&2; exit 2 ;; esac
# The pack's usual place is beside the repository; a config may set default_real_pack (smoke: none).
[ -n "$real_pack" ] || real_pack=${default_real_pack:-$(cd "$recipe/../.." && pwd)/../shared/data/realspeech}
# Heads: CED scores keywords inside real sentences at chance (recipe README), so the synthetic
# default leaves it out (saving its 4.5 min); LibriPhrase runs keep it, the papers' head.
[ -n "$heads" ] || heads=$([ "$corpus" = synth ] && echo "${synth_heads:-ctc,clad}" || echo ctc,ced,clad)
use_real=0
if [ "$real_pack" != none ] && [ -f "$real_pack/manifest.jsonl" ]; then use_real=1; fi

tag=${tag:-${corpus}_${config}}
exp=exp/$tag
data=data/$corpus${data_suffix:-}
mkdir -p "$exp/log" "$exp/.done"

log() { echo "$(date '+%F %T') (run.sh:${BASH_LINENO[0]}) $*" | tee -a "$exp/log/run.log"; }
done_stage() { touch "$exp/.done/$1"; }
todo() {  # todo STAGE NAME: true if STAGE is selected and not done yet
  if [ "$1" -lt "$stage" ] || [ "$1" -gt "$stop_stage" ]; then return 1; fi
  if [ -f "$exp/.done/$1" ]; then log "stage $1 ($2): done earlier, skipping"; return 1; fi
  log "stage $1: $2"; return 0
}
csv() { echo "$*" | tr ' ' ','; }   # csv a b c -> a,b,c (list overrides of the trainers)
train() {  # train CONFIG [overrides...]: one process, or torchrun over --ngpu GPUs
  if [ "$ngpu" -gt 1 ]; then
    torchrun --standalone --nproc_per_node="$ngpu" -m openkws train --config "$@"
  else
    python -m openkws train --config "$@"
  fi
}
IFS=, read -r -a head_list <<< "$heads"
trained_heads=()   # every head but the training-free ctc search
for h in "${head_list[@]}"; do
  [ "$h" = ctc ] && continue
  [ -f "$conf/$h.yaml" ] || { echo "run.sh: unknown head '$h' (no $conf/$h.yaml)" >&2; exit 2; }
  trained_heads+=("$h")
done
device=$([ "$ngpu" -gt 0 ] && echo cuda || echo cpu)
log "corpus=$corpus config=$config heads=$heads exp=$exp git=$(git rev-parse --short HEAD 2>/dev/null || echo none)"
log "command: $command_line"
if [ "$use_real" = 1 ]; then
  log "real speech: $real_pack (train split joins training; dev split selects and calibrates)"
else
  log "real speech: no pack at '$real_pack' -- synthetic speech only; checkpoints and thresholds chosen on synthetic dev data"
fi
log "acoustic model: $ctc_init"

if todo 0 "get the corpus"; then
  if [ "$corpus" = synth ]; then
    # Kokoro's neural voices are a corpus of their own, so the main corpus (and its test split)
    # stays the same whether or not they are added.
    python -m data_prep.synth --out "$data" --hours "$synth_hours" --seed "$seed" --voices '!kokoro:*' \
      ${synth_args:-} 2>&1 | tee "$exp/log/synth.log"
    if [ "$kokoro_hours" != 0 ]; then
      python -m data_prep.synth --out "${data}_kokoro" --hours "$kokoro_hours" --seed "$seed" --voices kokoro \
        ${synth_args:-} 2>&1 | tee "$exp/log/synth_kokoro.log"
    fi
  else
    [ -n "$data_root" ] || { echo "run.sh: --corpus librispeech needs --data-root DIR" >&2; exit 2; }
    python -m data_prep.librispeech --root "$data_root" --out "$data" \
      --subsets $librispeech_train $librispeech_dev $librispeech_test 2>&1 | tee "$exp/log/librispeech.log"
  fi
  if [ "$use_real" = 1 ]; then
    python -m data_prep.realspeech --pack "$real_pack" --out data/realspeech 2>&1 | tee "$exp/log/realspeech.log"
  fi
  done_stage 0
fi

# Manifests every later stage reads.
if [ "$corpus" = synth ]; then
  train_manifest=$data/train.jsonl; dev_manifest=$data/dev.jsonl; test_manifest=$data/test.jsonl
  if [ "$kokoro_hours" != 0 ]; then   # trained on; its test split is reported on its own (held-out voices)
    train_manifest="$train_manifest ${data}_kokoro/train.jsonl"; dev_manifest="$dev_manifest ${data}_kokoro/dev.jsonl"
    heldout_manifest=${data}_kokoro/test.jsonl
  fi
else
  train_manifest=$(for s in $librispeech_train; do printf '%s ' "$data/librispeech_$s.jsonl"; done)
  dev_manifest=$data/librispeech_$librispeech_dev.jsonl; test_manifest=$data/librispeech_$librispeech_test.jsonl
fi

ctc_dev_manifest=$dev_manifest
if [ "$use_real" = 1 ]; then   # real train speech joins training; real dev speech selects the acoustic model
  [ -f data/realspeech/train.jsonl ] || python -m data_prep.realspeech --pack "$real_pack" --out data/realspeech
  train_manifest="$train_manifest data/realspeech/train.jsonl"
  ctc_dev_manifest=data/realspeech/dev.jsonl
fi

if todo 1 "check manifests"; then
  python -m data_prep.check_manifests $train_manifest $dev_manifest $test_manifest $heldout_manifest
  done_stage 1
fi

if todo 2 "train the CTC acoustic model"; then
  init_conf=$conf/ctc.yaml; init_args=()
  if [ "$ctc_init" = hama ]; then init_conf=$conf/ctc_finetune.yaml; init_args=(init=hama); fi
  train "$init_conf" exp_dir="$exp/ctc" device=$device seed="$seed" "${init_args[@]}" \
    "data.train=[$(csv $train_manifest)]" "data.dev=[$(csv $ctc_dev_manifest)]" $ctc_args 2>&1 | tee "$exp/log/ctc.log"
  done_stage 2
fi

if todo 3 "forced alignment and P2V table"; then
  python -m openkws align --acoustic "$exp/ctc/best_model.pt" --manifest $train_manifest \
    --p2v "$exp/p2v.pt" --word-alignments "$exp/align/train.jsonl" --device $device \
    --max-per "${align_max_per:-0.5}" 2>&1 | tee "$exp/log/align.log"
  python -m evaluation.p2v_report --acoustic "$exp/ctc/best_model.pt" --p2v "$exp/p2v.pt" \
    --manifest $test_manifest --out "$exp/p2v_report" --max-per "${align_max_per:-0.5}" 2>&1 | tee "$exp/log/p2v_report.log"
  python -m evaluation.per --acoustic "$exp/ctc/best_model.pt" --manifest $test_manifest \
    --out "$exp/ctc/per_test.json" 2>&1 | tee "$exp/log/per_test.log"
  done_stage 3
fi

# Phrase clips (the audio side of every pair) per split. A synthetic corpus records its phrases
# as separate clips (kind "phrase" in its manifests); LibriSpeech phrases are cut from sentences.
phrases=$exp/phrases
if [ "$corpus" = synth ]; then
  # besides the recorded phrases, phrases cut from the training sentences with our own word
  # alignments: many more distinct keywords for the heads (each said by one voice)
  phrase_train="$(csv $train_manifest $phrases/train_cut.jsonl)"; phrase_dev=$(csv $dev_manifest); phrase_test=$test_manifest
  # the heads also keep their best epoch by real dev phrases, cut from the real dev sentences
  [ "$use_real" = 1 ] && phrase_dev="$phrase_dev,$phrases/dev_real_cut.jsonl"
else
  phrase_train=$phrases/train.jsonl; phrase_dev=$phrases/dev.jsonl; phrase_test=$phrases/test.jsonl
fi
if todo 4 "LibriPhrase-style phrases and pairs"; then
  mkdir -p "$phrases"
  if [ "$corpus" = synth ]; then
    python -m data_prep.libriphrase phrases --manifest $train_manifest --alignments "$exp/align/train.jsonl" \
      --clips "$phrases/clips/train" --out "$phrases/train_cut.jsonl" --max-gap 0.3 --pad "$phrase_pad" \
      --max-phrases "$synth_cut_phrases" --seed "$seed"
    if [ "$use_real" = 1 ]; then
      python -m openkws align --acoustic "$exp/ctc/best_model.pt" --manifest data/realspeech/dev.jsonl \
        --word-alignments "$exp/align/dev_real.jsonl" --device $device --max-per "${align_max_per:-0.5}"
      python -m data_prep.libriphrase phrases --manifest data/realspeech/dev.jsonl --alignments "$exp/align/dev_real.jsonl" \
        --clips "$phrases/clips/dev_real" --out "$phrases/dev_real_cut.jsonl" --max-gap 0.3 --pad "$phrase_pad" --seed "$seed"
    fi
  else
    splits="train dev"; [ -n "$libriphrase_csv" ] || splits="train dev test"
    for split in $splits; do
      case $split in train) m=$train_manifest ;; dev) m=$dev_manifest ;; test) m=$test_manifest ;; esac
      python -m openkws align --acoustic "$exp/ctc/best_model.pt" --manifest $m \
        --word-alignments "$exp/align/$split.jsonl" --device $device --max-per "${align_max_per:-0.5}"
      python -m data_prep.libriphrase phrases --manifest $m --alignments "$exp/align/$split.jsonl" \
        --clips "$phrases/clips/$split" --out "$phrases/$split.jsonl" --max-gap 0.3 --pad "$phrase_pad"
    done
  fi
  if [ -n "$libriphrase_csv" ]; then   # the official test set
    if [ -n "$libriphrase_audio" ]; then
      python -m data_prep.libriphrase official --csv-dir "$libriphrase_csv" --audio-root "$libriphrase_audio" \
        --out-manifest "$phrases/test.jsonl" --out-pairs "$phrases/test_pairs.csv"
    else
      python -m openkws align --acoustic "$exp/ctc/best_model.pt" --manifest "$test_manifest" \
        --word-alignments "$exp/align/test.jsonl" --device $device --max-per "${align_max_per:-0.5}"
      python -m data_prep.libriphrase official --csv-dir "$libriphrase_csv" --source-manifest "$test_manifest" \
        --alignments "$exp/align/test.jsonl" --clips "$phrases/clips/test" --allow-missing \
        --out-manifest "$phrases/test.jsonl" --out-pairs "$phrases/test_pairs.csv"
    fi
  else
    python -m data_prep.libriphrase pairs --manifest "$phrase_test" --seed "$seed" --out "$phrases/test_pairs.csv"
  fi
  if [ -n "$heldout_manifest" ]; then
    python -m data_prep.libriphrase pairs --manifest "$heldout_manifest" --seed "$seed" --out "$phrases/heldout_pairs.csv"
  fi
  done_stage 4
fi

if todo 5 "train the matcher heads: ${trained_heads[*]:-none}"; then
  for h in "${trained_heads[@]}"; do
    if [ -f "$exp/.done/5.$h" ]; then log "head $h: done earlier"; continue; fi
    train "$conf/$h.yaml" exp_dir="$exp/$h" device=$device seed="$seed" acoustic="$exp/ctc/best_model.pt" \
      p2v="$exp/p2v.pt" "train=[$phrase_train]" "dev=[$phrase_dev]" $head_args 2>&1 | tee "$exp/log/$h.log"
    done_stage "5.$h"
  done
  done_stage 5
fi

if todo 6 "export the model file"; then
  export_heads=()
  for h in "${head_list[@]}"; do
    if [ "$h" = ctc ]; then export_heads+=(--head ctc); else export_heads+=(--head "$h=$exp/$h/best_model.pt"); fi
  done
  python -m openkws export --acoustic "$exp/ctc/best_model.pt" --p2v "$exp/p2v.pt" "${export_heads[@]}" \
    --corpus "$corpus" --note "bash recipes/libriphrase/run.sh --corpus $corpus --config $config (acoustic: $ctc_init)" \
    --out "$exp/model.pt"
  if [ "$use_real" = 1 ]; then   # thresholds, the ctc calibration and the default head from real dev trials
    python -m evaluation.calibrate --model "$exp/model.pt" --trials "$real_pack/dev_trials.csv" \
      --default-head best --out "$exp/model.pt" 2>&1 | tee "$exp/log/calibrate.log"
  fi
  done_stage 6
fi

if todo 7 "score the test pairs, AUC/EER report"; then
  python -m evaluation.score --model "$exp/model.pt" --manifest "$phrase_test" \
    --pairs "$phrases/test_pairs.csv" --heads "$heads" --out "$exp/scores.jsonl"
  realspeech_args=()
  if [ "$use_real" = 1 ]; then
    python -m evaluation.realspeech --model "$exp/model.pt" --pack "$real_pack" --out "$exp/realspeech" \
      ${realspeech_eval_args:-} 2>&1 | tee "$exp/log/realspeech_eval.log"
    realspeech_args=(--realspeech "$exp/realspeech/realspeech.json")
  fi
  python -m evaluation.report --scores "$exp/scores.jsonl" --corpus "$corpus" --out "$exp" \
    --acoustic-init "$ctc_init" "${realspeech_args[@]}"
  cat "$exp/results.md"
  if [ -n "$heldout_manifest" ]; then   # the test split of the extra voices, on its own
    python -m evaluation.score --model "$exp/model.pt" --manifest "$heldout_manifest" \
      --pairs "$phrases/heldout_pairs.csv" --heads "$heads" --out "$exp/heldout/scores.jsonl"
    python -m evaluation.report --scores "$exp/heldout/scores.jsonl" --corpus "${corpus}_kokoro" --out "$exp/heldout"
  fi
  done_stage 7
fi
log "finished: $exp"
}

main "$@"
exit
