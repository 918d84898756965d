/* Prints every dataset and attribute of an HDF5 file as a C user reads them with libhdf5:
 * strings with the usual idiom (H5T_C_S1, variable length, "%s"), floats as the bits of the
 * value widened to double, integers in decimal. One line per item, in a form
 * Tests/interop/test_file_format.py compares with h5py's and R's reading of the same file.
 *
 *   A <object> <attribute> <s|i|f> <value ...>
 *   D <dataset> <i|f> <shape, comma-separated> <value ...>
 */
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_double_bits(double v) {
  uint64_t bits;
  memcpy(&bits, &v, 8);
  printf(" %016" PRIx64, bits);
}

static herr_t read_attribute(hid_t id, hid_t mem, void *buf) { return H5Aread(id, mem, buf); }
static herr_t read_dataset(hid_t id, hid_t mem, void *buf) { return H5Dread(id, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); }

/* Prints the values after the header; returns -1 on a read failure. */
static int dump_values(hid_t id, hid_t type, hsize_t count, int is_attribute) {
  herr_t (*read)(hid_t, hid_t, void *) = is_attribute ? read_attribute : read_dataset;
  H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_STRING) {
    if (count != 1) return -1;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5T_CSET_UTF8);
    char *s = NULL;
    if (read(id, mem, &s) < 0) return -1;
    printf(" s %s\n", s);
    H5free_memory(s);
    H5Tclose(mem);
    return 0;
  }
  if (cls == H5T_FLOAT) {
    double *v = malloc((size_t)count * sizeof(double) + 8);
    if (read(id, H5T_NATIVE_DOUBLE, v) < 0) return -1;
    printf(" f");
    for (hsize_t k = 0; k < count; k++) print_double_bits(v[k]);
    printf("\n");
    free(v);
    return 0;
  }
  if (cls == H5T_INTEGER) {
    if (H5Tget_sign(type) == H5T_SGN_NONE) {
      unsigned long long *v = malloc((size_t)count * 8 + 8);
      if (read(id, H5T_NATIVE_ULLONG, v) < 0) return -1;
      printf(" i");
      for (hsize_t k = 0; k < count; k++) printf(" %llu", v[k]);
      printf("\n");
      free(v);
    } else {
      long long *v = malloc((size_t)count * 8 + 8);
      if (read(id, H5T_NATIVE_LLONG, v) < 0) return -1;
      printf(" i");
      for (hsize_t k = 0; k < count; k++) printf(" %lld", v[k]);
      printf("\n");
      free(v);
    }
    return 0;
  }
  return -1;
}

static int failures = 0;

static herr_t attribute(hid_t object, const char *name, const H5A_info_t *info, void *path) {
  (void)info;
  hid_t a = H5Aopen(object, name, H5P_DEFAULT);
  hid_t type = H5Aget_type(a), space = H5Aget_space(a);
  printf("A %s %s", (const char *)path, name);
  if (dump_values(a, type, (hsize_t)H5Sget_simple_extent_npoints(space), 1) < 0) {
    printf(" ?\n");
    failures++;
  }
  H5Sclose(space);
  H5Tclose(type);
  H5Aclose(a);
  return 0;
}

static herr_t visit(hid_t root, const char *name, const H5O_info_t *info, void *unused) {
  (void)unused;
  char path[1024];
  snprintf(path, sizeof path, "/%s", strcmp(name, ".") == 0 ? "" : name);
  hid_t object = H5Oopen(root, name, H5P_DEFAULT);
  H5Aiterate2(object, H5_INDEX_NAME, H5_ITER_INC, NULL, attribute, path);
  if (info->type == H5O_TYPE_DATASET) {
    hid_t type = H5Dget_type(object), space = H5Dget_space(object);
    int rank = H5Sget_simple_extent_ndims(space);
    hsize_t dims[8];
    H5Sget_simple_extent_dims(space, dims, NULL);
    printf("D %s ", path);
    for (int k = 0; k < rank; k++) printf("%s%llu", k ? "," : "", (unsigned long long)dims[k]);
    if (dump_values(object, type, (hsize_t)H5Sget_simple_extent_npoints(space), 0) < 0) {
      printf(" ?\n");
      failures++;
    }
    H5Sclose(space);
    H5Tclose(type);
  }
  H5Oclose(object);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: dump FILE.h5\n");
    return 2;
  }
  hid_t f = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return 1;
  H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, NULL);
  H5Fclose(f);
  return failures ? 1 : 0;
}
