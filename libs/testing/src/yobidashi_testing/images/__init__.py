"""Building Yobidashi's images on whatever engine the machine has (``make images``), with local
stand-ins for base images no registry serves, and running the compose stack from them."""
