"""ALFNet-2s, ResNet-50, on Caltech Pedestrian (new annotations): train on train_10x, evaluate on the standard
4024-frame test set with the Caltech dbEval (lla_jax/evaluation/caltech.py; Reasonable is the headline).

python -m data_pipelines.prepare caltech --manual_dir DIR --data_dir PREPARED
python main.py --config=configs/alfnet_r50_2s_caltech.py --workdir=W --config.data.data_dir=PREPARED

What the ALFNet paper (Liu et al., ECCV 2018) states for Caltech: the result on the test set with the new
annotations (Zhang et al., CVPR 2016), trained on the 10x training frames: MR^-2 Reasonable 6.1 % (4.5 % when
initialised from the CityPersons model), 22.5 % / 18.6 % at IoU 0.75. The ALFNet repository has no Caltech code,
and the training settings are not stated in the material available. Everything else is the CityPersons recipe
(configs/alfnet.py: network, anchors, thresholds, losses, Adam 1e-4, batch 20, 15 000 iterations, NMS 0.5,
score 0.1, 100 detections), with these choices where the paper is silent:
  - data: train_10x (42 782 frames, every 3rd frame of set00-set05; the new annotations where their folder is
    present, `prepare --annotations new` insists on them); test = every 30th frame of set06-set10.
  - augmentation: ALFNet's own (keras_alfnet/data_augment.py: brightness, flip, random scale-crop r ~ U(0.3, 1)
    around a person) with the crop resized to the full 480x640 frame (data.train_size), so a crop is enlarged
    1x-3.3x; CityPersons trains at 640x1280 crops of 1024x2048 images (0.63x-2.08x).
  - training images: only frames with a box that is not ignored (ALFNet trains only on images with GT;
    CSP, the authors' later Caltech code, mixes in frames without people 1:1 instead).
  - test input: the full 480x640 frame, no resize (as ALFNet tests CityPersons at full size and CSP Caltech).
  - data.max_boxes 64 (boxes and ignore regions of one frame; prepare stops naming a frame with more).
"""
from configs.alfnet import alfnet_config

CALTECH_SIZE = (480, 640)


def get_config():
  c = alfnet_config(2, backbone="resnet")
  d = c.data
  d.name = "caltech"
  d.augment = "alfnet"            # the registry's Caltech default is 'flip' (the FCOS family)
  d.train_split = "train_10x"
  d.eval_split = "test"
  d.train_size = CALTECH_SIZE     # every training crop is resized to the frame size (H, W)
  d.eval_size = CALTECH_SIZE      # test input: the full frame
  d.pad_size = CALTECH_SIZE
  d.min_size = CALTECH_SIZE[0]    # unused by 'alfnet'; the frame size
  d.max_size = CALTECH_SIZE[1]
  d.max_boxes = 64
  # The Caltech protocol (lla_jax/evaluation/protocols.py: all 19 dbEval setups, Reasonable as MR) instead of
  # the CityPersons toolbox of configs/alfnet.py.
  del c.evals["citypersons"]
  c.evals.caltech = {"split": c.data.get_ref("eval_split")}
  return c
