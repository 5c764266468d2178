"""`python -m tlgan_jax.serve --help`: start the editor web app (see tlgan_jax.serve.launch)."""
from tlgan_jax.serve.launch import main

if __name__ == "__main__":
    main()
