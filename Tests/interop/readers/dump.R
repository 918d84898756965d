# Prints every dataset and attribute of an HDF5 file as an R user reads them with hdf5r, in
# the line format of Tests/interop/readers/dump.c (floats as the bits of the double R holds,
# integers in decimal, strings as given), for Tests/interop/test_file_format.py to compare.
#
#   Rscript dump.R FILE.h5
suppressPackageStartupMessages(library(hdf5r))

args <- commandArgs(trailingOnly = TRUE)
file <- H5File$new(args[1], mode = "r")

bits <- function(x) {
  # The IEEE-754 bits of each double, as 16 hex digits (writeBin gives little-endian bytes).
  raw <- writeBin(as.double(x), raw(), size = 8, endian = "little")
  m <- matrix(as.character(raw), nrow = 8)
  apply(m[8:1, , drop = FALSE], 2, paste, collapse = "")
}

integers <- function(x) {
  # Exact decimal of integers R holds as integer, double (up to 2^53) or integer64.
  if (inherits(x, "integer64")) return(as.character(x))
  if (is.double(x)) {
    stopifnot(all(x == round(x)), all(abs(x) < 2^53))
    return(formatC(x, format = "f", digits = 0))
  }
  as.character(x)
}

values <- function(x, type_class) {
  if (type_class == "H5T_STRING") return(paste("s", paste(x, collapse = " ")))
  if (type_class == "H5T_FLOAT") return(paste(c("f", bits(as.vector(x))), collapse = " "))
  if (type_class == "H5T_INTEGER") return(paste(c("i", integers(as.vector(x))), collapse = " "))
  "?"
}

attributes_of <- function(object, path) {
  names <- sort(h5attr_names(object))
  for (name in names) {
    a <- object$attr_open(name)
    v <- a$read()
    cat("A", path, name, values(v, a$get_type()$get_class()), "\n")
    a$close()
  }
}

attributes_of(file, "/")
for (name in sort(file$ls(recursive = TRUE)$name)) {
  path <- paste0("/", name)
  object <- file[[name]]
  attributes_of(object, path)
  if (inherits(object, "H5D")) {
    # hdf5r gives R's column-major dims (reversed); as.vector keeps the file's row-major order.
    dims <- rev(object$dims)
    v <- object$read()
    cat("D", path, paste(dims, collapse = ","), values(v, object$get_type()$get_class()), "\n")
  }
  object$close()
}
file$close_all()
