"""Tutorial task 10: ResNet50's summary (25,636,712 parameters). The model zoo (cnnkit.applications)
arrives with its own issue; until it lands this script says so and exits cleanly."""

import sys

try:
    from cnnkit import applications
except ImportError:
    print("cnnkit.applications (the model zoo: VGG16, ResNet50, ...) is not part of this version yet")
    sys.exit(0)

applications.ResNet50(weights=None).summary()
