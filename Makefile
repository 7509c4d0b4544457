# Two commands on a fresh machine: `make run` (the whole task) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA ?= data
RUN ?= runs/mepp19
# The task's run codes include the team name (rteam_base -> rteam_base.zip): set TEAM.
TEAM ?= myteam
RUN_CODE ?= $(TEAM)_unet
ATTACK_MODEL ?= weights/resnet50_places365.pth.tar
# No sha256 of the official checkpoint is published: set ATTACK_SHA256 to pin the file you
# downloaded; without it the unpinned file is accepted explicitly.
ATTACK_SHA256 ?=
CHECKSUM = $(if $(ATTACK_SHA256),--sha256 $(ATTACK_SHA256),--allow-unpinned)
TRAIN_CHECKSUM = --model.classifier.init_args.$(if $(ATTACK_SHA256),sha256 $(ATTACK_SHA256),allow_unpinned true)
# Offline with a re-packed or otherwise differing copy of an official file: KEEP_MISMATCHED=1
# uses it as it is (reported by `data fetch`; the numbers are then not the task's).
KEEP_MISMATCHED ?=
# NIMA-MobileNet weights (idealo): when the file is there, the manifest and the report add
# each photo's NIMA score before and after.
NIMA ?= weights/weights_mobilenet_aesthetic_0.07.hdf5
# APPEAL=1: train the appeal variant (configs/overlays/appeal.yaml, trained against $(NIMA));
# the report then splits the NIMA change into the edit's and the perturbation's.
APPEAL ?=
APPEAL_CONFIG = $(if $(APPEAL),--config configs/overlays/appeal.yaml --model.appeal.init_args.weights $(NIMA))
# GPU=1 / GPU=0 chooses the recipe; by default torch is asked whether it sees a CUDA device.
# Without one, training runs the CPU recipe (configs/overlays/cpu.yaml: bounded, see README).
# (asked once, and only by the targets that use it).
ifeq ($(origin GPU),undefined)
GPU = $(eval GPU := $(shell $(PY) -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0))$(GPU)
endif
RECIPE = $(if $(filter 1,$(GPU)),,--config configs/overlays/cpu.yaml)
RECIPE_NOTE = $(if $(filter 1,$(GPU)),GPU recipe (configs/mepp19.yaml: 40 epochs$(comma) bf16),no GPU found: CPU recipe (configs/overlays/cpu.yaml: 2 epochs of 128 px windows$(comma) training stops after 90 min at most; about 1 h in all on 2 cores). Set GPU=1 to force the GPU recipe)
comma := ,
# More trainer flags, after every config: devices, strategy, resuming, e.g.
# TRAINER_ARGS='--trainer.devices 4 --trainer.strategy ddp' or TRAINER_ARGS='--ckpt_path last'.
TRAINER_ARGS ?=
# One set of paths for every step: training reads the same files that are protected and scored.
TRAIN_PATHS = --data.images $(DATA)/val_256.tar --data.train_list $(DATA)/MEPP18val.csv \
	--data.labels_file $(DATA)/places365_val.txt \
	--model.sensitive_categories $(DATA)/MEPP18senscats.txt --model.classifier.init_args.checkpoint $(ATTACK_MODEL)
# A rerun resumes only the files this protector with these settings made; after retraining
# (or changing a setting) the old submission is refused unless OVERWRITE=1 replaces it.
OVERWRITE ?=
# White-box gradient steps after the generator (through JPEG at the output quality): on the
# stand-in, 2 steps take the saved files from 98.0%/82.4% to 99.0%/96.1% top-1/top-5 fooled.
REFINE_STEPS ?= 2
# Their loss: SensitiveSafe pushes every sensitive category out of the top 5 with the label
# (stand-in, 2 steps at 2/255: 100% / 78.4% non-sensitive top-1 / top-5 vs 89.2% / 48.6%).
REFINE_LOSS ?= sensitive_safe

.PHONY: install test run standin clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The whole task: fetch what is missing, train on MEPP18val, protect MEPP19test into the
# submission zip, evaluate the written files. Offline, the fetch step says which file goes where.
# The task classifies its 256 px files as they are: --views as-is (protect's default, classifiers,
# is for photos that platforms and classifiers resize).
run: $(STAMP)
	@echo "make run: $(RECIPE_NOTE)"
	$(PY) -m protector data fetch --root $(DATA) --weights $(dir $(ATTACK_MODEL)) $(if $(KEEP_MISMATCHED),--keep-mismatched)
	$(PY) train.py fit --config configs/mepp19.yaml $(APPEAL_CONFIG) $(RECIPE) --trainer.default_root_dir $(RUN) $(TRAIN_PATHS) $(TRAIN_CHECKSUM) $(TRAINER_ARGS)
	$(PY) infer.py --protector $(RUN)/protector.pt --list $(DATA)/MEPP19test.csv --images $(DATA)/val_256.tar \
		--output $(RUN)/submission --format jpeg --quality 90 --run-code $(RUN_CODE) --zip --views as-is --refine-steps $(REFINE_STEPS) $(if $(OVERWRITE),--overwrite) \
		--refine-loss $(REFINE_LOSS) --senscats $(DATA)/MEPP18senscats.txt \
		--classifier resnet50 --classifier-checkpoint $(ATTACK_MODEL) $(CHECKSUM) --categories $(DATA)/categories_places365.txt \
		$(if $(wildcard $(NIMA)),--nima $(NIMA))
	$(PY) -m protector evaluate --protected $(RUN)/submission --run-code $(RUN_CODE) --list $(DATA)/MEPP19test.csv \
		--original $(DATA)/val_256.tar --labels $(DATA)/places365_val.txt --categories $(DATA)/categories_places365.txt \
		--senscats $(DATA)/MEPP18senscats.txt --classifier resnet50 --classifier-checkpoint $(ATTACK_MODEL) $(CHECKSUM) \
		$(if $(wildcard $(NIMA)),--nima $(NIMA)) --protector $(RUN)/protector.pt --out $(RUN)/report

# The same pipeline on the stand-in classifier and the photos in ../shared (CPU, minutes).
standin: $(STAMP)
	$(PY) train.py fit --config configs/standin.yaml --trainer.default_root_dir runs/standin

clean-venv:
	rm -rf $(VENV)
