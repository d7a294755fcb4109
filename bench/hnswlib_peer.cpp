// The hnswlib side of bench_mips: a C interface over Debian's hnswlib (header-only, C++), compiled only when
// /usr/include/hnswlib/hnswlib.h exists.  Inner-product space, the same M and ef_construction as polopt.
#include <hnswlib/hnswlib.h>

#include <cstddef>
#include <cstdint>
#include <new>

struct peer {
    hnswlib::InnerProductSpace space;
    hnswlib::HierarchicalNSW<float> index;
    peer(size_t dim, size_t n, size_t M, size_t efc) : space(dim), index(&space, n, M, efc, 100) {}
};

extern "C" {

void *peer_build(const float *data, size_t n, size_t dim, size_t M, size_t efc, double *bytes_per_item)
{
    peer *p = new (std::nothrow) peer(dim, n, M, efc);
    if (!p) return NULL;
    for (size_t i = 0; i < n; ++i) p->index.addPoint(data + i * dim, i);
    // level 0 (links, vector, label) for every element, plus the upper-level link lists
    double bytes = (double)p->index.size_data_per_element_ * (double)n;
    for (size_t i = 0; i < n; ++i) bytes += (double)p->index.size_links_per_element_ * p->index.element_levels_[i];
    *bytes_per_item = bytes / (double)n;
    return p;
}

// k results, best first
void peer_search(void *handle, const float *query, size_t k, size_t ef, uint32_t *out)
{
    peer *p = (peer *)handle;
    p->index.setEf(ef);
    std::priority_queue<std::pair<float, hnswlib::labeltype>> r = p->index.searchKnn(query, k);
    size_t i = r.size();
    for (size_t j = i; j < k; ++j) out[j] = 0xffffffffu;
    while (!r.empty()) {
        out[--i] = (uint32_t)r.top().second;  // the largest distance (1 - inner product) comes out first
        r.pop();
    }
}

void peer_free(void *handle)
{
    delete (peer *)handle;
}
}
