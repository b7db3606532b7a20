// Experiment, not part of vidkit: full vs cropped decode (jpeg_crop_scanline + jpeg_skip_scanlines) of the same
// JPEGs with the system libjpeg-turbo, one core: what a partial decode would save on the 224 eval crop.
//   gcc -O2 benchmarks/partial_decode.c -o /tmp/partial_decode -ljpeg \
//     && /tmp/partial_decode $(ls ../shared/data/ucf101_applyeyemakeup/*/*/*.jpg | awk "NR%3==0" | head -800)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jpeglib.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void decode(unsigned char *buf, unsigned long n, unsigned char *out, int crop, int cx, int cy, int cw, int ch) {
  struct jpeg_decompress_struct c; struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e); jpeg_create_decompress(&c);
  jpeg_mem_src(&c, buf, n); jpeg_read_header(&c, TRUE);
  c.out_color_space = JCS_RGB;
  jpeg_start_decompress(&c);
  if (!crop) {
    while (c.output_scanline < c.output_height) { JSAMPROW r = out + c.output_scanline * c.output_width * 3; jpeg_read_scanlines(&c, &r, 1); }
  } else {
    JDIMENSION x = cx, w = cw; jpeg_crop_scanline(&c, &x, &w);
    if (cy) jpeg_skip_scanlines(&c, cy);
    while (c.output_scanline < (JDIMENSION)(cy + ch)) { JSAMPROW r = out + (c.output_scanline - cy) * w * 3; jpeg_read_scanlines(&c, &r, 1); }
    jpeg_skip_scanlines(&c, c.output_height - c.output_scanline);
  }
  jpeg_finish_decompress(&c); jpeg_destroy_decompress(&c);
}

int main(int argc, char **argv) {
  int n = argc - 1; unsigned char **bufs = malloc(n * sizeof *bufs); unsigned long *sz = malloc(n * sizeof *sz);
  for (int i = 0; i < n; i++) { FILE *f = fopen(argv[i + 1], "rb"); fseek(f, 0, SEEK_END); sz[i] = ftell(f); rewind(f); bufs[i] = malloc(sz[i]); fread(bufs[i], 1, sz[i], f); fclose(f); }
  unsigned char *out = malloc(4000 * 4000 * 3);
  for (int mode = 0; mode < 2; mode++) {
    double best = 1e9;
    for (int r = 0; r < 5; r++) { double t = now(); for (int i = 0; i < n; i++) decode(bufs[i], sz[i], out, mode, 58, 16, 224, 224); t = now() - t; if (t < best) best = t; }
    printf("%s: %.3f ms/frame\n", mode ? "crop 224 (x 58, y 16)" : "full 340x256", best / n * 1e3);
  }
  return 0;
}
