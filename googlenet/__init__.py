"""GoogLeNet / Inception ImageNet trainer."""
