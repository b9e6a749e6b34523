// Seeds shop.orders with sample orders when the collection is empty. CREATE SYNC infers the
// collection's columns from a sample of its documents, so the collection must exist (and hold
// the fields the sync's SELECT names) before misql starts. Run once by the `seed` service:
//   mongosh 'mongodb://mongo:27017/shop?replicaSet=rs0' /seed.js
const orders = db.getSiblingDB('shop').orders;
const existing = orders.countDocuments();
if (existing > 0) {
  print(`shop.orders has ${existing} documents: not seeding`);
} else {
  const statuses = ['paid', 'pending', 'shipped'];
  const cities = ['Lisbon', 'Oslo', 'Quito', 'Kyoto', 'Accra'];
  const docs = [];
  for (let i = 0; i < 200; i++) {
    const price = 5 + (i % 40) * 2.5;
    const qty = 1 + (i % 4);
    docs.push({
      status: statuses[i % statuses.length],
      customer: {
        name: `Customer ${i % 17}`,
        email: `c${i}@example.com`,
        address: { city: cities[i % cities.length], zip: String(10000 + i) },
      },
      items: [{ sku: `SKU-${String(i % 50).padStart(4, '0')}`, qty: qty, price: price }],
      total: NumberDecimal((qty * price).toFixed(2)),
      created_at: new Date(Date.UTC(2024, 0, 1) + i * 37 * 60 * 1000),
    });
  }
  orders.insertMany(docs);
  print(`seeded shop.orders with ${docs.length} orders`);
}
