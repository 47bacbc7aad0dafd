256 SHA256:Gr4Hu8p/Z7Ob26/BRbJJdLGJQpz3rmUx0AMAvb9pkjo test-only ecdsa (ECDSA)
