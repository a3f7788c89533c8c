"""What the paper reports, and the two networks it compares, in one place."""

MODELS = {"P-LinkNet": "plinknet", "LinkNet34": "linknet34"}  # name -> file slug of the ablation's runs
PAPER = {"P-LinkNet": {"iou": 84.48, "second": 91.50}, "LinkNet34": {"iou": 84.26, "second": 91.04}}  # Table 1
PAPER_GAP = 0.22  # points of the paper's "IoU" (84.48 - 84.26), which chapter 6 finds most likely mIoU
READINGS = {"iou": "building IoU", "miou": "mIoU"}  # the two readings of the paper's metric
