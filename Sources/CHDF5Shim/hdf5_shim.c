#include <hdf5.h>
#include <string.h>
#include "hdf5_shim.h"
hid_t tessera_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t tessera_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
hid_t tessera_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
hid_t tessera_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
hid_t tessera_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
hid_t tessera_h5t_c_s1(void) { return H5T_C_S1; }
hid_t tessera_h5p_default(void) { return H5P_DEFAULT; }
hid_t tessera_h5s_all(void) { return H5S_ALL; }
hid_t tessera_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
hid_t tessera_h5p_link_create(void) { return H5P_LINK_CREATE; }
void tessera_h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void tessera_h5_silence_errors_once_per_thread(void) {
    static _Thread_local int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

hid_t tessera_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
hid_t tessera_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
hid_t tessera_h5t_std_i64le(void) { return H5T_STD_I64LE; }
hid_t tessera_h5t_std_u8le(void) { return H5T_STD_U8LE; }
hid_t tessera_h5p_file_access(void) { return H5P_FILE_ACCESS; }
size_t tessera_h5t_variable(void) { return H5T_VARIABLE; }
unsigned tessera_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
unsigned tessera_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
unsigned tessera_h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }

struct tessera_error_buf { char *buf; size_t len; int found; };

static herr_t tessera_take_first(unsigned n, const H5E_error2_t *err, void *data) {
    struct tessera_error_buf *out = (struct tessera_error_buf *)data;
    (void)n;
    if (!out->found && err != NULL && err->desc != NULL && err->desc[0] != '\0') {
        strncpy(out->buf, err->desc, out->len - 1);
        out->buf[out->len - 1] = '\0';
        out->found = 1;
    }
    return 0;
}

int tessera_h5_take_error_message(char *buf, size_t len) {
    struct tessera_error_buf out = { buf, len, 0 };
    if (buf == NULL || len == 0) return 0;
    buf[0] = '\0';
    // Upward: starts at the innermost frame, where the problem was detected.
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, tessera_take_first, &out);
    H5Eclear2(H5E_DEFAULT);
    return out.found;
}

struct tessera_visit_ctx { tessera_h5_name_sink emit; void *ctx; };

static herr_t tessera_visit_link(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    struct tessera_visit_ctx *v = (struct tessera_visit_ctx *)data;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) { H5Eclear2(H5E_DEFAULT); return 0; }
    H5I_type_t kind = H5Iget_type(obj);
    H5Oclose(obj);
    if (kind == H5I_DATASET) v->emit(name, v->ctx);
    return 0;
}

herr_t tessera_h5_visit_datasets(hid_t loc_id, tessera_h5_name_sink emit, void *ctx) {
    struct tessera_visit_ctx v = { emit, ctx };
    return H5Lvisit(loc_id, H5_INDEX_NAME, H5_ITER_INC, tessera_visit_link, &v);
}

int tessera_h5_object_kind(hid_t loc_id, const char *name) {
    // H5Lexists fails (rather than returning 0) when an intermediate group is missing, so walk
    // the path one component at a time.
    char path[4096];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(path)) return 0;
    memcpy(path, name, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char saved = path[i];
            path[i] = '\0';
            if (i > 0 && path[i - 1] != '/') {   // skip empty components ("a//b", leading "/")
                htri_t exists = H5Lexists(loc_id, path, H5P_DEFAULT);
                if (exists <= 0) { path[i] = saved; H5Eclear2(H5E_DEFAULT); return 0; }
            }
            path[i] = saved;
        }
    }
    hid_t obj = H5Oopen(loc_id, name, H5P_DEFAULT);
    if (obj < 0) { H5Eclear2(H5E_DEFAULT); return 3; }
    H5I_type_t kind = H5Iget_type(obj);
    H5Oclose(obj);
    if (kind == H5I_GROUP) return 1;
    if (kind == H5I_DATASET) return 2;
    return 3;
}
