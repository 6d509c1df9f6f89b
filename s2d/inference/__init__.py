"""Running a trained VideoMask2Former on whole videos (clip-stitched) to get instance tubes."""
