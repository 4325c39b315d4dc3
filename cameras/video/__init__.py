"""Live H.264 for our own player: encoded once per camera, packaged as fragmented MP4.

`h264` encodes, `fmp4` packages; both are plain PyAV/OpenCV code with no Django. The frame
pipeline's `cameras.video_track.VideoTrack` runs them while some process has an H.264 viewer of
the camera, and `cameras.video_fanout` hands the fragments to the viewers of each process.
"""
