"""Built-in agents. Each is a standalone script copied into /home/agent and run inside the sandbox.

They use only what a sandbox has (the standard library; the baseline also numpy, pandas,
scikit-learn and Pillow) and the agent contract's paths and environment variables.
"""
