"""The live dashboard the gateway serves at ``/ui`` when the policy turns it on."""
