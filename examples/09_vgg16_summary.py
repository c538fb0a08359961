"""Tutorial task 9: VGG16's summary (138,357,544 parameters). The model zoo (cnnkit.applications)
arrives with its own issue; until it lands this script says so and exits cleanly."""

import sys

try:
    from cnnkit import applications
except ImportError:
    print("cnnkit.applications (the model zoo: VGG16, ResNet50, ...) is not part of this version yet")
    sys.exit(0)

applications.VGG16(weights=None).summary()
