"""Association: deciding identities (association), correcting them (recluster), the camera topology, and the loop
that runs them while this matcher holds the lease (leader)."""
