"""Energy estimates of spiking students from counted operations and spike rates."""
