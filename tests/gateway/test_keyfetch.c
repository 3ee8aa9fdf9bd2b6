/* test_keyfetch.c - a cluster gateway's key fetcher (gateway/keyfetch.h) against a fake source:
 * answers in submission order (K1), a source that cannot be reached asked again until it
 * answers (K2), final answers taken as they are (erased, a key another node made), bad jobs
 * refused, the wake after each answer (K4); and the keystore's async mode with adopt
 * (crypto/keys.h): a subject not here is FV_EAGAIN, never asked for on the caller's thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/keys.h"
#include "gateway/keyfetch.h"
#include "util/err.h"

struct fake {
    pthread_mutex_t mu;
    int calls;        /* source calls */
    int fail_first;   /* the first N calls answer FV_EIO */
    int wakes;        /* K4 */
    pthread_t caller; /* the thread the source was asked on */
};

static int fake_subject(void *arg, const char *pseudo, int create, unsigned char dek[FV_KEY_LEN],
                        char name[FV_NAME_MAX + 1])
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    int n = ++f->calls;
    f->caller = pthread_self();
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(create, 1);
    if (n <= f->fail_first) return FV_EIO;
    if (pseudo[0] == 'e') return FV_ESTATE; /* erased */
    if (pseudo[0] == 'o') {                 /* another node's key won: its key, its name */
        memset(dek, 0x77, FV_KEY_LEN);
        snprintf(name, FV_NAME_MAX + 1, "OTHER");
    }
    return FV_OK;
}

static void fake_wake(void *arg)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    f->wakes++;
    pthread_mutex_unlock(&f->mu);
}

static int take_wait(struct fv_keyfetch *kf, struct fv_keyfetch_answer *a)
{
    for (int i = 0; i < 500; i++) { /* 5 s */
        if (fv_keyfetch_take(kf, a)) return 1;
        usleep(10000);
    }
    return 0;
}

static const char *pseudo(char c)
{
    static char p[FV_PSEUDONYM_LEN + 1];
    memset(p, c, FV_PSEUDONYM_LEN);
    p[FV_PSEUDONYM_LEN] = '\0';
    return p;
}

static void test_order_retry_final_answers(void **state)
{
    (void)state;
    struct fake f = {.fail_first = 2};
    pthread_mutex_init(&f.mu, NULL);
    struct fv_keysource src = {.arg = &f, .subject = fake_subject};
    struct fv_keyfetch *kf = NULL;
    assert_int_equal(fv_keyfetch_start(&src, fake_wake, &f, &kf), FV_OK);
    assert_int_equal(fv_keyfetch_submit(kf, 1, "short", "VIN1"), FV_EINVAL);
    assert_int_equal(fv_keyfetch_submit(kf, 1, pseudo('a'), ""), FV_EINVAL);
    assert_int_equal(fv_keyfetch_submit(kf, 1, pseudo('a'), "VIN1"), FV_OK);
    assert_int_equal(fv_keyfetch_submit(kf, 2, pseudo('e'), "VIN2"), FV_OK);
    assert_int_equal(fv_keyfetch_submit(kf, 3, pseudo('o'), "VIN3"), FV_OK);
    /* K5: resent records' jobs for a subject already waiting are not queued again (the
     * thread is still asking for 'a' - two tries fail first - so 'o' still waits) */
    assert_int_equal(fv_keyfetch_submit(kf, 0, pseudo('o'), "VIN3"), FV_OK);
    assert_int_equal(fv_keyfetch_submit(kf, 0, pseudo('o'), "VIN3"), FV_OK);

    struct fv_keyfetch_answer a;
    assert_true(take_wait(kf, &a)); /* asked three times: two FV_EIO, then the key (K2) */
    assert_int_equal(a.session_id, 1);
    assert_int_equal(a.rc, FV_OK);
    assert_string_equal(a.pseudo, pseudo('a'));
    assert_string_equal(a.name, "VIN1");
    unsigned char zero[FV_KEY_LEN] = {0};
    assert_memory_not_equal(a.dek, zero, FV_KEY_LEN); /* the fresh key it offered */
    assert_true(take_wait(kf, &a));
    assert_int_equal(a.session_id, 2);
    assert_int_equal(a.rc, FV_ESTATE);
    assert_memory_equal(a.dek, zero, FV_KEY_LEN); /* nothing handed over */
    assert_true(take_wait(kf, &a));
    assert_int_equal(a.session_id, 3);
    assert_int_equal(a.rc, FV_OK);
    assert_string_equal(a.name, "OTHER");
    unsigned char other[FV_KEY_LEN];
    memset(other, 0x77, sizeof other);
    assert_memory_equal(a.dek, other, FV_KEY_LEN);
    usleep(200000); /* time for any job queued twice to be asked and answered */
    assert_false(fv_keyfetch_take(kf, &a));
    pthread_mutex_lock(&f.mu);
    assert_int_equal(f.calls, 5);
    assert_int_equal(f.wakes, 3);
    assert_false(pthread_equal(f.caller, pthread_self())); /* never on the submitter's thread */
    pthread_mutex_unlock(&f.mu);
    fv_keyfetch_stop(kf);
    fv_keyfetch_stop(NULL);
    pthread_mutex_destroy(&f.mu);
}

/* The keystore in async mode: nothing not here is asked for; adopt stores what was fetched
 * (its name must give its pseudonym), or the tombstone of an erased subject. */
static void test_keystore_async_adopt(void **state)
{
    (void)state;
    char dir[] = "/tmp/fv-keyfetch-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/catalog.db", dir);
    struct fv_kek kek;
    memset(&kek, 0, sizeof kek);
    memset(kek.key, 9, sizeof kek.key);
    snprintf(kek.id, sizeof kek.id, "test");
    struct fake f = {0};
    pthread_mutex_init(&f.mu, NULL);
    struct fv_keysource src = {.arg = &f, .subject = fake_subject};
    struct fv_keystore *ks = NULL;
    char err[256];
    assert_int_equal(fv_keystore_open_shared(path, &kek, &src, &ks, err, sizeof err), FV_OK);
    fv_keystore_set_async(ks, 1);
    const unsigned char *dek = NULL;
    char ps[FV_PSEUDONYM_LEN + 1], ps2[FV_PSEUDONYM_LEN + 1];
    assert_int_equal(fv_keystore_dek(ks, "VINA", 1, &dek, ps), FV_EAGAIN);
    assert_int_equal(fv_keystore_dek(ks, "VINA", 0, &dek, ps), FV_ENOENT);
    assert_int_equal(f.calls, 0); /* the source was never asked here */

    unsigned char k[FV_KEY_LEN];
    memset(k, 0x42, sizeof k);
    assert_int_equal(fv_keystore_pseudonym(ks, "VINB", ps2), FV_OK);
    assert_int_equal(fv_keystore_adopt(ks, FV_OK, ps, k, "VINB"), FV_ECORRUPT); /* wrong name */
    assert_int_equal(fv_keystore_adopt(ks, FV_EIO, ps, k, "VINA"), FV_EIO);
    assert_int_equal(fv_keystore_dek(ks, "VINA", 1, &dek, ps), FV_EAGAIN); /* nothing stored */
    assert_int_equal(fv_keystore_adopt(ks, FV_OK, ps, k, "VINA"), FV_OK);
    assert_int_equal(fv_keystore_dek(ks, "VINA", 1, &dek, ps), FV_OK);
    assert_memory_equal(dek, k, FV_KEY_LEN);
    unsigned char k2[FV_KEY_LEN];
    memset(k2, 0x43, sizeof k2);
    assert_int_equal(fv_keystore_adopt(ks, FV_OK, ps, k2, "VINA"), FV_OK); /* kept as it is */
    assert_int_equal(fv_keystore_dek(ks, "VINA", 1, &dek, ps), FV_OK);
    assert_memory_equal(dek, k, FV_KEY_LEN);
    assert_int_equal(fv_keystore_adopt(ks, FV_ESTATE, ps2, k, "VINB"), FV_OK); /* tombstone */
    assert_int_equal(fv_keystore_dek(ks, "VINB", 1, &dek, ps2), FV_ESTATE);
    assert_int_equal(f.calls, 0);
    fv_keystore_close(ks);
    pthread_mutex_destroy(&f.mu);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_retry_final_answers),
        cmocka_unit_test(test_keystore_async_adopt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
